"""The model: shapes, the SoLU / SoLU-LN maths, hook capture, and TransformerLens compatibility."""

import pytest
import torch
import torch.nn.functional as F

from solu_core.model import ACT_FNS, ModelConfig, Transformer, param_count, pick_device

SMALL = dict(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=97, n_ctx=16)


def make(act_fn: str, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(**SMALL, act_fn=act_fn)).eval()
    with torch.no_grad():  # non-trivial biases and LN weights so a mis-mapped parameter would show
        for name, p in model.named_parameters():
            if not name.split(".")[-1].startswith("W_"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def tokens(batch=3, pos=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, SMALL["d_vocab"], (batch, pos), generator=g)


@pytest.mark.parametrize("act_fn", ACT_FNS)
def test_forward_shapes_and_loss(act_fn):
    model = make(act_fn)
    x = tokens()
    logits = model(x)
    assert logits.shape == (3, 12, SMALL["d_vocab"])
    loss = model.loss(x)
    assert torch.isfinite(loss)
    # an untrained model with small init is close to uniform
    assert abs(loss.item() - torch.log(torch.tensor(97.0)).item()) < 0.5
    assert param_count(model) == sum(p.numel() for p in model.parameters())


def test_parameter_names_and_shapes_follow_transformer_lens():
    sd = make("solu_ln").state_dict()
    d, h, dh, m, v = SMALL["d_model"], SMALL["n_heads"], SMALL["d_head"], SMALL["d_mlp"], SMALL["d_vocab"]
    expect = {
        "embed.W_E": (v, d), "pos_embed.W_pos": (SMALL["n_ctx"], d), "blocks.0.ln1.w": (d,),
        "blocks.0.attn.W_Q": (h, d, dh), "blocks.0.attn.W_O": (h, dh, d), "blocks.1.mlp.W_in": (d, m),
        "blocks.1.mlp.b_in": (m,), "blocks.1.mlp.W_out": (m, d), "blocks.1.mlp.b_out": (d,),
        "blocks.1.mlp.ln.w": (m,), "ln_final.w": (d,), "unembed.W_U": (d, v), "unembed.b_U": (v,),
    }
    for name, shape in expect.items():
        assert tuple(sd[name].shape) == shape, name
    assert "blocks.0.mlp.ln.w" not in make("gelu").state_dict()


def test_solu_ln_hooks_compute_the_paper_definition():
    model = make("solu_ln")
    x = tokens()
    names = ["blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_mid", "blocks.0.mlp.hook_post"]
    cache = model.run_with_mlp_cache(x, names, dtype=torch.float32)
    pre, mid, post = (cache[n] for n in names)
    assert pre.shape == (3, 12, SMALL["d_mlp"])
    torch.testing.assert_close(mid, pre * F.softmax(pre, dim=-1))
    ln = model.blocks[0].mlp.ln
    centred = mid - mid.mean(-1, keepdim=True)
    expect = centred / (centred.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt() * ln.w + ln.b
    torch.testing.assert_close(post, expect)


def test_run_with_mlp_cache_returns_only_what_was_asked_in_the_dtype():
    model = make("gelu")
    cache = model.run_with_mlp_cache(tokens(), ["blocks.1.mlp.hook_post"], dtype=torch.float16)
    assert list(cache) == ["blocks.1.mlp.hook_post"]
    assert cache["blocks.1.mlp.hook_post"].dtype == torch.float16
    assert all(block.mlp.capture is None for block in model.blocks)  # nothing left attached
    with pytest.raises(ValueError, match="hook_mid"):
        model.run_with_mlp_cache(tokens(), ["blocks.0.mlp.hook_mid"])  # gelu has no hook_mid
    with pytest.raises(ValueError, match="MLP hook name"):
        model.run_with_mlp_cache(tokens(), ["blocks.0.attn.hook_z"])


def test_unknown_act_fn_lists_the_choices():
    with pytest.raises(ValueError, match="gelu, solu, solu_ln"):
        ModelConfig(act_fn="relu")


def test_pick_device_auto():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu").type == "cpu"


@pytest.mark.parametrize("act_fn", ACT_FNS)
def test_state_dict_loads_into_transformer_lens_with_same_outputs(act_fn):
    """Our weights in a HookedTransformer built from config.to_transformer_lens(), no weight processing:
    same logits and same MLP activations at every hook."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    model = make(act_fn)
    cfg = model.cfg
    tl = HookedTransformer(HookedTransformerConfig(**cfg.to_transformer_lens()))
    tl.load_and_process_state_dict(
        model.state_dict(), fold_ln=False, center_writing_weights=False, center_unembed=False,
        fold_value_biases=False, refactor_factored_attn_matrices=False,
    )
    tl.eval()
    x = tokens()
    names = [n for layer in range(cfg.n_layers) for n in cfg.hook_names(layer)]
    with torch.no_grad():
        tl_logits, tl_cache = tl.run_with_cache(x, names_filter=lambda n: n in names)
        ours = model.run_with_mlp_cache(x, names, dtype=torch.float32)
        torch.testing.assert_close(model(x), tl_logits, atol=1e-4, rtol=1e-4)
    for name in names:
        torch.testing.assert_close(ours[name], tl_cache[name], atol=1e-5, rtol=1e-4, msg=name)
