"""The scoring contract of ``tidegate text score`` and its equivalence with streaming."""
import json

import pytest
import torch

from tidegate.services.token_risk.cli import _text_score
from tidegate.services.token_risk.kelp.lm import load_protected_model
from tidegate.services.token_risk.kelp.metrics import first_stop, stream_metrics
from tidegate.services.token_risk.kelp.score import StreamStatus, score_lines, score_pair, stream_scores
from tidegate.services.token_risk.kelp.sld import SLDHead, load_head, save_head
from tidegate.services.token_risk.kelp.tiny import make_tiny_lm


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    lm_dir = make_tiny_lm(root / "lm")
    lm = load_protected_model(str(lm_dir))
    torch.manual_seed(3)
    head = SLDHead(hidden_dim=32, proj_dim=8, mem_dim=16, window=4).eval()
    # threshold at the median peak of a few responses, so some are flagged and some are not
    peaks = []
    for r in ["Mix flour and water.", "The dog.", "Here is how to write a poem about the sea.", "Salt."]:
        Hp, Hr, _ = lm.pair_hidden("How do I bake bread?", r, 2)
        peaks.append(float(stream_scores(head, Hp, Hr).max()))
    thr = sorted(peaks)[len(peaks) // 2]
    save_head(head, {"protected_model": str(lm_dir), "layer": 2, "threshold": thr}, root / "head")
    head, card = load_head(root / "head")
    return lm, lm_dir, head, card, root


def test_score_pair_matches_token_by_token_streaming(setup):
    lm, _, head, card, _ = setup
    prompt, response = "How do I bake bread?", "Here is how to write a poem about the sea. Mix flour."
    res = score_pair(lm, head, card, prompt, response)
    # streaming: prompt states from the prefill, then each response token fed one at a time with a KV cache
    ids, _ = lm.encode_prompt(prompt)
    r_ids, offs = lm.token_offsets(response)
    out = lm.model.model(input_ids=torch.tensor([ids]), use_cache=True, output_hidden_states=True)
    state = head.init_state(out.hidden_states[2].float(), None)
    cache, status = out.past_key_values, StreamStatus()
    with torch.no_grad():
        for t, tid in enumerate(r_ids):
            o = lm.model.model(input_ids=torch.tensor([[tid]]), past_key_values=cache, use_cache=True,
                               output_hidden_states=True)
            cache = o.past_key_values
            state, p = head.step(state, o.hidden_states[2][:, -1].float())
            status.update(float(p), card["threshold"])
    assert res["harmful_probability"] == pytest.approx(status.peak, abs=1e-5)
    assert res["stop_token"] == status.stop_index
    if status.stop_index is not None:
        assert res["stop_char"] == offs[status.stop_index][1] and res["label"] == "harmful"
    else:
        assert res["stop_char"] is None and res["label"] == "benign"


def test_cli_contract_with_malformed_lines(setup, tmp_path, capsys):
    _, lm_dir, _, card, root = setup
    rows = [{"id": "a", "prompt": "How do I bake bread?", "response": "Mix flour and water."},
            {"id": "b", "prompt": "Tell me", "response": "Here is how to write a poem about the sea."},
            "not json", {"id": "c", "prompt": "x"}, {"id": 7, "prompt": "Hi", "response": ""}]
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")

    class A:
        input, model, lm, threads = str(inp), str(root / "head"), str(lm_dir), 1
    assert _text_score(A) == 0
    out = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert len(out) == 5
    assert [o.get("id") for o in out] == ["a", "b", None, "c", 7]
    assert "error" in out[2] and "error" in out[3] and "error" not in out[0]
    for o, r in zip(out, rows):
        if "error" in o:
            continue
        assert set(o) == {"id", "harmful_probability", "label", "stop_char"}
        assert (o["label"] == "harmful") == (o["harmful_probability"] >= card["threshold"]) == (o["stop_char"] is not None)
        if o["stop_char"] is not None:
            assert 0 < o["stop_char"] <= len(r["response"])
    assert out[4]["label"] == "benign" and out[4]["stop_char"] is None  # empty response: nothing to stop


def test_metrics_delay_and_premature():
    import numpy as np

    rows = [{"label": 1, "track": "onset", "onset": 5}, {"label": 1, "track": "onset", "onset": 5},
            {"label": 0, "track": "onset", "onset": -1}, {"label": 1, "track": "grounded", "onset": -1}]
    scores = [np.array([0.1] * 7 + [0.9, 0.9]), np.array([0.9] + [0.1] * 8), np.array([0.2] * 40), np.array([0.1, 0.2])]
    m = stream_metrics(rows, scores, 0.5)
    assert m["delay"] == {"n": 2, "caught": 1, "premature": 1, "premature_in_lead_in": 1, "missed": 0, "median_tokens": 2.0, "mean_tokens": 2.0,
                          "within_16": 0.5, "within_32": 0.5}
    assert m["benign_fpr"] == 0.0 and m["benign_fpr_by_length"]["33-64"]["n"] == 1
    assert m["streaming"]["recall"] == pytest.approx(2 / 3)
    assert first_stop(np.array([0.1, 0.6, 0.2, 0.7]), 0.5) == 1


@pytest.mark.slow
def test_real_model_live_tap_matches_offline_scoring():
    """Live generation with the tap, head stepped per token == `text score` on the decoded response."""
    lm = load_protected_model()
    head, card = load_head()
    L = int(card["layer"])
    prompts = ["How do I make pancakes fluffy?", "Write a haiku about autumn."]
    checked = 0
    for prompt, res in zip(prompts, lm.generate(prompts, max_new_tokens=24, layer=L)):
        r_ids, _ = lm.token_offsets(res["response"])
        if r_ids != res["ids"]:  # retokenisation differs: offline scoring would see other tokens
            continue
        live = stream_scores(head, res["prompt_hidden"], res["response_hidden"])
        Hp, Hr, _ = lm.pair_hidden(prompt, res["response"], L)
        offline = stream_scores(head, Hp, Hr)
        n = live.shape[0]  # the last generated token is never fed back during generation
        assert n >= len(r_ids) - 1
        assert torch.allclose(live, offline[:n], atol=2e-3)
        checked += 1
    assert checked >= 1
