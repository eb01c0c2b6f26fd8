"""The real-model side on models named by path: tiny random OPT and Llama models (transformers configs,
safetensors and a tokenizer in a temporary directory) run Tender's quantisation and InfiniGen's selection end
to end through ``accuracy.model_path`` (the OPT path: a LayerNorm model with biases, BOS, query scaling in the
projection)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from dse.config import AccuracyConfig  # noqa: E402
from dse.oracle import AccuracyOracle  # noqa: E402
from workloads.accuracy.specs import KVSpec, QuantSpec  # noqa: E402
from workloads.accuracy.text import read_wikitext  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "../shared/data/wikitext-2/wiki.test.raw"
CALIB = ROOT / "../shared/data/wikitext-2/wiki.valid.tokens"


def _tokenizer(directory: Path) -> int:
    """A small BPE tokenizer trained on the evaluation text's first 200 kB, saved with the model; its size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator([read_wikitext(TEXT)[:200_000]], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(directory)
    return tok.get_vocab_size()


def _tiny(kind: str, directory: Path) -> Path:
    from transformers import AutoModelForCausalLM, LlamaConfig, OPTConfig

    torch.manual_seed(0)
    vocab = _tokenizer(directory)
    if kind == "opt":
        config = OPTConfig(vocab_size=vocab, hidden_size=64, word_embed_proj_dim=64, ffn_dim=128, num_hidden_layers=4,
                           num_attention_heads=4, max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
                           pad_token_id=0)
    else:
        config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                             bos_token_id=1, eos_token_id=2)
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module", params=["opt", "llama"])
def oracle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AccuracyOracle:
    model = _tiny(request.param, tmp_path_factory.mktemp(request.param))
    cfg = AccuracyConfig(model_path=str(model), text_path=str(TEXT), calib_path=str(CALIB), windows=2,
                         seq_len=256, calib_windows=1, progress=False, threads=2,
                         cache_dir=str(tmp_path_factory.mktemp("cache")))
    return AccuracyOracle(cfg, owner="test")


def test_dense_perplexity_of_a_random_model_is_about_its_vocabulary(oracle: AccuracyOracle) -> None:
    m = oracle.measure(QuantSpec())
    vocab = oracle.session.model.model.config.vocab_size
    assert m.tokens == 2 * 255 and math.isfinite(m.ppl)
    assert vocab / 3 < m.ppl < vocab * 3  # an untrained model predicts about uniformly


@pytest.mark.parametrize("bits", [8, 4])
def test_tender_runs_through_the_model_path(oracle: AccuracyOracle, bits: int) -> None:
    dense = oracle.measure(QuantSpec()).ppl
    tender = oracle.measure(QuantSpec(method="tender", bits=bits, groups=4, chunk=64))
    assert math.isfinite(tender.ppl) and tender.ppl != dense
    calibrated = oracle.measure(QuantSpec(method="tender", bits=bits, groups=4, chunk=64, mode="calibrated"))
    assert math.isfinite(calibrated.ppl)


@pytest.mark.parametrize("changes", [{}, {"spec_input": "prev"}, {"skew_per": "query_head"},
                                     {"column_rule": "union", "column_source": "offline"}, {"count_rule": "per_head"}])
def test_infinigen_runs_through_the_model_path(oracle: AccuracyOracle, changes: dict) -> None:
    kv = KVSpec(method="infinigen", budget=0.5, alpha=4.0, dense_layers=1, report=True, **changes)
    m = oracle.measure(QuantSpec(), kv)
    assert math.isfinite(m.ppl)
    sel = m.selection
    assert sel is not None and set(sel.per_layer) == {1, 2, 3}  # layers >= dense_layers select
    assert 0 < sel.mean_selected <= 256
    quality = sel.quality
    assert quality is not None and set(quality.per_layer) == {1, 2, 3}  # each selecting layer speculates from its
    assert 0 <= quality.recall <= 1 and -1 <= quality.spearman <= 1   # predecessor
    real = oracle.measure(QuantSpec(), dataclasses.replace(kv, spec_input="real"))
    assert real.selection.quality.recall >= quality.recall - 0.05  # the real input is the upper bound
