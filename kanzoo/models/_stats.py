"""Model statistics for ``kanzoo info``, model cards and benchmarks."""


#: what torch.utils.flop_counter counts, of the ops kanzoo's models run
COUNTED_OPS = "convolutions, matmuls (mm/addmm/bmm/baddbmm) and attention"


def count_macs(model, input_size, device: str = "meta"):
    """MACs (FLOPs / 2) of one batch-1 forward at ``input_size`` (C, H, W), by torch.utils.flop_counter.

    Counts only the ops FlopCounterMode has formulas for: convolutions, matmuls (mm/addmm/bmm/baddbmm) and
    attention. The basis expansion, norms, activations and pooling are elementwise and not counted. On the
    meta device nothing is computed or allocated. Returns ``(macs, {op: flops})``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, *input_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    per_op = {str(k).replace("aten.", ""): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return counter.get_total_flops() / 2, per_op
