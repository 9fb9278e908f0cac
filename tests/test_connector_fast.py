"""The connector's shared-projection path (`all_levels`, used by `forward`) against the official one-level path
(`level`, the code as the official implementation writes it): same outputs and gradients, and its kept
position projections follow every change of the weights."""

import pytest
import torch

from videosalmonn.config import ConnectorConfig, ResolutionLevel
from videosalmonn.connector.multires import MultiResolutionConnector
from videosalmonn.connector.qformer import Attention, CausalQFormer, additive_mask, through_weights_is_cheaper

Q, DV = 32, 16


def connector(dtype=torch.float64, **kw) -> MultiResolutionConnector:
    torch.manual_seed(0)
    cfg = ConnectorConfig(width=16, num_heads=4, mlp_width=32, **kw)
    conn = MultiResolutionConnector(cfg, DV, Q, 12, 10, 24).to(dtype).eval()
    with torch.no_grad():  # positions and biases as large as the weights (they start at 0 or tiny)
        for name, p in conn.named_parameters():
            if "bias" in name or "position" in name:
                p.normal_()
    return conn


def inputs(conn, frames: int = 20, own: tuple[int, ...] = (20, 13), dtype=torch.float64):
    """Normalised tokens (B, T, Q, 3Dv) and a slot mask with masked padding (a whole 1-frame window of it)."""
    g = torch.Generator().manual_seed(1)
    x = conn.norm(torch.randn(len(own), frames, Q, 3 * DV, generator=g, dtype=dtype))
    mask = (torch.arange(frames)[None] < torch.tensor(own)[:, None]).to(dtype)
    return x, mask


def reference(conn, x, mask):
    return tuple(conn.level(i, x, mask) for i in range(len(conn.cfg.levels)))


@pytest.mark.parametrize(
    "kw",
    [
        {},  # the released layout: one Q-Former, 1-frame and 10-frame windows, future-looking causal block
        {"causal": "past"},
        {"causal": "none"},
        {"share_qformer": False},
        {"levels": (ResolutionLevel(1, 3), ResolutionLevel(5, 15), ResolutionLevel(10, 30))},
    ],
)
def test_all_levels_equal_the_official_path(kw):
    conn = connector(**kw)
    x, mask = inputs(conn)
    with torch.no_grad():
        fast, ref = conn.all_levels(x, mask), reference(conn, x, mask)
    for a, b in zip(fast, ref, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)  # float64: only the order of the sums differs
    assert mask[1, 13:].sum() == 0 and fast[0][1, 13:].isfinite().all()  # all-padding windows: uniform, not NaN


def test_float32_within_1e_5_and_forward_uses_the_shared_path(monkeypatch):
    conn = connector(torch.float32)
    x, mask = inputs(conn, dtype=torch.float32)
    with torch.no_grad():
        ref = reference(conn, x, mask)
        fast = conn.all_levels(x, mask)
        monkeypatch.setattr(CausalQFormer, "forward", None)  # forward must not call the one-level path
        monkeypatch.setattr(MultiResolutionConnector, "level", None)
        conn.all_levels(x, mask)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_gradients_equal_the_official_path():
    conn = connector().train()
    for module in conn.modules():  # dropout draws differ between the two paths: compare without it
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    grads = []
    for run in (conn.all_levels, lambda x, mask: reference(conn, x, mask)):
        conn.zero_grad()
        x, mask = inputs(conn)
        sum((h * torch.linspace(-1, 1, h.shape[-1], dtype=h.dtype)).sum() for h in run(x, mask)).backward()
        grads.append({n: p.grad.clone() for n, p in conn.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "position.weight" in grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-10, rtol=1e-8, msg=name)


def test_position_projections_are_kept_and_follow_the_weights(monkeypatch):
    conn = connector()
    x, mask = inputs(conn)
    x = x.detach()
    calls = []
    project = CausalQFormer.project_positions
    monkeypatch.setattr(CausalQFormer, "project_positions", lambda self, p: calls.append(1) or project(self, p))

    def check():
        fast, ref = conn.all_levels(x, mask), reference(conn, x, mask)
        for a, b in zip(fast, ref, strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)

    with torch.no_grad():
        check()
        check()
        assert len(calls) == 1  # kept between calls
        conn.position.weight[5] += 1.0  # in place: a new version
        check()
        conn.qformers[0].layers[1].causal.v.bias.mul_(2.0)
        check()
        assert len(calls) == 3
        conn.load_state_dict({k: v + 0.5 for k, v in conn.state_dict().items()})
        check()
    conn.float().double()  # converted and back (storages may be reused at the same address)
    with torch.no_grad():
        check()
    with torch.inference_mode():
        check()
    with torch.no_grad():
        check()  # kept under inference mode: not reused outside it
    assert len(calls) == 7
    x = x.detach().requires_grad_(True)
    conn.all_levels(x, mask)[1].sum().backward()  # with gradients: computed afresh, through autograd
    assert conn.position.weight.grad is not None and conn.position.weight.grad[:320].abs().sum() > 0


def test_cross_attention_through_the_weights_equals_projecting_the_context():
    torch.manual_seed(0)
    attn = Attention(16, 48, 4, 1e-12, 0.0).double().eval()
    with torch.no_grad():
        for p in (attn.k.bias, attn.v.bias):
            p.normal_()  # the bias terms are part of the identity
    x, context = torch.randn(5, 3, 16, dtype=torch.float64), torch.randn(5, 32, 48, dtype=torch.float64)
    keep = torch.rand(5, 32) > 0.3
    keep[1] = False  # a window made only of padding: uniform attention
    mask = additive_mask(keep, torch.float64)[:, None, None, :]
    with torch.no_grad():
        torch.testing.assert_close(attn.attend_through_weights(x, context, mask), attn(x, context, mask))


def test_masks_and_level_choices_are_made_at_construction():
    conn = connector()
    assert conn.causal_masked == (False, True)  # a 1-frame window attends every pair: no mask
    assert conn.cross_through_weights == (True, False)  # width 16: only the 3-query windows read through weights
    assert through_weights_is_cheaper(3, 32, 768, 2304, 12) and through_weights_is_cheaper(30, 320, 768, 2304, 12)
    assert not through_weights_is_cheaper(60, 640, 768, 2304, 12)  # 20-frame windows: projecting is cheaper
    assert conn.levels_of_qformer == ((0, 1),)
    assert connector(share_qformer=False).levels_of_qformer == ((0,), (1,))
    assert connector(causal="none").causal_masked == (False, False)
