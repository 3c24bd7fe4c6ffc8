import pytest
import torch
from recovery_data import small_cnn


@pytest.fixture
def cnn():
    torch.manual_seed(0)
    return small_cnn()
