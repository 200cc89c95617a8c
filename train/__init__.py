"""Training side of fertrt (needs torch): the model zoo, data sets and the training loop."""
