"""kanzoo's workflows behind the command line: predict, validate, train/finetune (one process or DDP under
torchrun), plot, benchmark and the offline demo.

One module per command; ``kanzoo.cli`` only parses arguments and calls them::

    from kanzoo.workflows.loading import load_model
    from kanzoo.workflows.train import TrainConfig, train
    from kanzoo.workflows.validate import validate

    result = train(TrainConfig(model="simple_conv_kagn", data="data/", epochs=5, img_size=32))
    print(validate(load_model("simple_conv_kagn", checkpoint=result.run_dir), "data/val").top1)
"""
from ..errors import WorkflowError

__all__ = ["WorkflowError"]
