import os

import torch

# one intra-op thread per pytest-xdist worker (the workers already fill the cores), else up to two
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _workers)))

# the Hub look-alike's fixtures (fake_hub, hub_env) for every test module
pytest_plugins = ["tests.support.fakehub"]
