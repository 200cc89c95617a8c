"""engine/compat.py: what each TensorRT release can do, detected on stand-in modules."""

import pytest

from engine_testing import CAPS, fake_trt
from fertrt.engine.compat import capabilities_of
from fertrt.errors import FertrtError


def test_capabilities_per_version():
    assert not CAPS["8.5.2"].strongly_typed and CAPS["8.5.2"].explicit_batch_flag and CAPS["8.5.2"].calibrator
    assert not CAPS["8.5.2"].builder_opt_level and CAPS["8.6.1"].builder_opt_level
    assert CAPS["10.3.0"].strongly_typed and not CAPS["10.3.0"].explicit_batch_flag and CAPS["10.3.0"].fp16_flag
    assert CAPS["11.1.0"].strongly_typed and not CAPS["11.1.0"].fp16_flag and not CAPS["11.1.0"].calibrator


def test_tensorrt_older_than_8_5_gets_one_message():
    """Defect 8: 8.4 (JetPack 5.0 apt) lacks the tensor API; one message naming the minimum."""
    from fertrt.engine.compat import require_supported

    caps = capabilities_of(fake_trt("8.4.1"))
    assert not caps.tensor_api
    with pytest.raises(
        FertrtError, match=r"TensorRT 8.4.1 is too old for fertrt: it needs TensorRT 8.5 or newer \(JetPack 5.1\+"
    ):
        require_supported(caps)
    assert require_supported(CAPS["8.5.2"]) is CAPS["8.5.2"]
