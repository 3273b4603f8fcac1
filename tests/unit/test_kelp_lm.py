"""Protected-model loader and hidden-state tap, on a tiny random-init llama (fast) and the real GGUF (slow)."""
import pytest
import torch

from tidegate.services.token_risk.kelp.lm import ProtectedModel, load_protected_model
from tidegate.services.token_risk.kelp.tiny import make_tiny_lm


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_lm(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_protected_model(str(tiny_dir))


def test_tiny_loader_dims_and_spans(tiny):
    assert isinstance(tiny, ProtectedModel) and tiny.num_layers == 4 and tiny.hidden_dim == 32
    prompt, response = "How do I bake bread?", "Mix flour and water."
    enc = tiny.encode_pair(prompt, response)
    p_ids, span = tiny.encode_prompt(prompt)
    assert enc.input_ids[: enc.prompt_len] == p_ids
    # the user span decodes back to the prompt text, the response tokens to the response
    assert tiny.tokenizer.decode(p_ids[span[0]:span[1]]).strip() == prompt
    r_ids = enc.input_ids[enc.prompt_len:]
    assert tiny.tokenizer.decode(r_ids) == response
    # char offsets tile the response
    assert enc.offsets[0][0] == 0 and enc.offsets[-1][1] == len(response)
    assert all(a[1] == b[0] for a, b in zip(enc.offsets, enc.offsets[1:]))


def test_tap_matches_output_hidden_states(tiny):
    enc = tiny.encode_pair("The quick brown fox", "jumps over the lazy dog.")
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        ref = tiny.model(input_ids=ids, output_hidden_states=True).hidden_states
    got = tiny.hidden_states(ids, None, [1, 3])
    assert torch.allclose(got[1], ref[1], atol=1e-5) and torch.allclose(got[3], ref[3], atol=1e-5)
    Hp, Hr, enc2 = tiny.pair_hidden("The quick brown fox", "jumps over the lazy dog.", 3)
    assert Hp.shape[0] == enc2.prompt_len and Hr.shape[0] == enc2.response_len
    assert torch.allclose(torch.cat([Hp, Hr]), ref[3][0], atol=1e-5)
    with pytest.raises(ValueError):
        tiny.hidden_states(ids, None, [5])


def test_batch_padding_does_not_change_states(tiny):
    a = tiny.encode_pair("How do I bake bread?", "Mix flour.")
    b = tiny.encode_pair("The quick brown fox jumps over the lazy dog?", "The dog.")
    batch = tiny.batch_pair_hidden([a, b], [2])
    single = tiny.hidden_states(torch.tensor([a.input_ids]), None, [2])[2][0]
    assert torch.allclose(batch[0][2], single, atol=1e-5)


def test_generation_tap_equals_teacher_forcing(tiny):
    out = tiny.generate(["How do I bake bread?", "The quick brown fox"], max_new_tokens=6, layer=2)
    for prompt, res in zip(["How do I bake bread?", "The quick brown fox"], out):
        ids, _ = tiny.encode_prompt(prompt)
        full = torch.tensor([ids + res["ids"]])
        tf = tiny.hidden_states(full, None, [2])[2][0]
        assert torch.allclose(res["prompt_hidden"], tf[: len(ids)], atol=1e-4)
        n = res["response_hidden"].shape[0]
        assert n == max(0, len(res["ids"]) - 1) or n == len(res["ids"])
        assert torch.allclose(res["response_hidden"], tf[len(ids): len(ids) + n], atol=1e-4)


@pytest.mark.slow
def test_real_gguf_loader():
    lm = load_protected_model()
    assert lm.num_layers == 30 and lm.hidden_dim == 576
    Hp, Hr, enc = lm.pair_hidden("How do I bake bread?", "Mix flour, water and yeast.", 12)
    assert Hp.shape == (enc.prompt_len, 576) and Hr.shape == (enc.response_len, 576)
    assert torch.isfinite(Hr).all()
    out = lm.generate(["What is the capital of France?"], max_new_tokens=12)
    assert "Paris" in out[0]["response"]
