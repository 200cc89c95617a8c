"""engine/builder.py: the checks it makes before TensorRT calibrates."""

import pytest

from fertrt.errors import FertrtError


def test_too_few_calibration_images_are_refused_naming_both_numbers():
    """Defect 9: fewer images than one OPT batch is refused before TensorRT builds."""
    from fertrt.engine.builder import check_calibration_images

    with pytest.raises(FertrtError, match=r"calibration data has 20 images, fewer than one calibration batch of 32"):
        check_calibration_images(20, 32)
    check_calibration_images(32, 32)
