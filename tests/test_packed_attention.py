import copy

import pytest
import torch
import torch.nn.functional as F

from nesso.distributed import apply_compile
from nesso.model import build_model
from nesso.packed_attention import FP32_BACKWARD_BELOW, packed_attention, packed_causal_mask
from nesso.train import causal_lm_loss


def _attend(fn, base, doc, dtype):
    q, k, v = (x.to(dtype).transpose(1, 2).detach().requires_grad_() for x in base)
    y = fn(q, k, v)
    keep = (doc >= 0)[:, None, :, None]  # padding's outputs are never trained on
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y.float() * weights * keep).sum().backward()
    return [(y * keep).float(), q.grad.float(), k.grad.float(), v.grad.float()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_attention_equals_the_block_diagonal_mask_in_values_and_gradients(dtype):
    """Grouped-query heads, two rows packed differently, padding, and one sample long enough that its backward
    stays in bf16 while the short ones go through fp32 copies."""
    torch.manual_seed(0)
    t = FP32_BACKWARD_BELOW + 40
    doc = torch.tensor([[0] * 15 + [1] * (t - 15), [0] * 7 + [1] * 10 + [2] * (t - 27) + [-1] * 10])
    base = [torch.randn(2, t, heads, 16) for heads in (6, 2, 2)]
    masked = _attend(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=packed_causal_mask(doc),
                                                                     enable_gqa=True), base, doc, dtype)
    packed = _attend(lambda q, k, v: packed_attention(q, k, v, doc), base, doc, dtype)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2
    for got, want in zip(packed, masked):
        assert (got - want).norm() / want.norm() < tolerance


def test_compiled_layers_take_packed_rows_without_recompiling(tiny_config):
    """The samples reach the compiled layers as a tensor, so a new packing is not a new graph, and packed rows of
    another length are one more graph (dynamic in the length), not one per length; the compiled step's loss and
    gradients are the eager step's."""
    torch.manual_seed(0)
    eager = build_model(tiny_config, seed=1)
    compiled = copy.deepcopy(eager)
    apply_compile(compiled)
    layouts = ([20, 28], [5, 30, 13], [25, 15], [9, 30, 5])  # 48, 48, then 40 (a new length), then 44
    for i, lengths in enumerate(layouts):
        ids = torch.randint(0, 1000, (1, sum(lengths)))
        doc = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))[None]
        positions = torch.cat([torch.arange(n) for n in lengths])[None]
        batch = {"input_ids": ids, "labels": ids, "doc_ids": doc, "positions": positions}
        losses, grads = [], []
        for model in (eager, compiled):
            model.zero_grad()
            with torch._dynamo.config.patch(error_on_recompile=i in (1, 3)):
                loss = causal_lm_loss(model, batch)
            loss.backward()
            losses.append(loss.detach())
            grads.append([p.grad.clone() for p in model.layers.parameters()])
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-4)
        for a, b in zip(grads[1], grads[0]):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
