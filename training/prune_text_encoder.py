"""A vocabulary-pruned copy of the converted MiniLM text encoder, for GPU training uploads only.

GPU runs take at most 64 MiB of uploads. The converted encoder is 86 MiB (F32) or 43 MiB (F16);
half of that is the word-embedding table (30,522 x 384), of which training uses the rows of only
the few hundred token ids that the prompt generator (world_vocab.paraphrases / describe, through
train_lib.data.prompt_for) can produce. This tool keeps those rows:

* the full vocabulary stays in the file (the tokenizer must give the full file's ids, and the
  exported model's vocabulary must be the full one the C++ engine uses);
* `text_encoder.embeddings.word_embeddings.weight` holds only the kept rows, and the I32 tensor
  `text_encoder.embeddings.word_embeddings.kept_ids` says which id each row belongs to;
* `__metadata__["strand.text_pruned"]` names the full encoder file, so that a model trained with
  the pruned copy still names the real encoder (train_lib.modelio uses it for `encoder_file`);
* the text config's "format" is "strand-text-encoder-pruned": the C++ engine, which expects
  "strand-text-encoder", refuses the pruned file instead of running it with missing rows.

Loading (convert_minilm.encoder_from_tensors) expands the table to full size with zero rows and
records the kept ids; train_lib.text.TextBank raises on any other id, so a prompt outside the
generator's language fails loudly instead of reading a zero row. For the generator's prompts the
hidden states equal the full encoder's (same dtype) exactly: tests/test_prune_text_encoder.py.

    python3 training/prune_text_encoder.py [--full .deps/models/...] [--out .deps/gpu-train/...]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterable, List, Set

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "training"))

from strand_ref.export import VOCAB_KEY, read_tensors, write_tensors  # noqa: E402
from strand_ref.tokenizer import WordPieceTokenizer, load_vocab  # noqa: E402

import world_vocab  # noqa: E402

FULL_NAME = "text-encoder-minilm-l6-v2.safetensors"
DEFAULT_FULL = REPO / ".deps" / "models" / FULL_NAME
DEFAULT_OUT = REPO / ".deps" / "gpu-train" / "text-encoder-minilm-l6-v2.pruned.safetensors"
TEXT_CONFIG_KEY = "strand.text_config"
PRUNED_KEY = "strand.text_pruned"
PRUNED_FORMAT = "strand-text-encoder-pruned"
WORD_KEY = "text_encoder.embeddings.word_embeddings.weight"
KEPT_KEY = "text_encoder.embeddings.word_embeddings.kept_ids"
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def generator_fragments() -> List[str]:
    """Every piece of text the training prompt generator concatenates.

    BERT's basic tokenizer splits on whitespace and punctuation before WordPiece runs word by
    word, so the token ids of any concatenation of these pieces (with spaces and the separators
    below) are the union of the pieces' ids. Both generator paths are covered: the paraphrase
    tables and the canonical `describe` sentence of every attribute combination.
    """
    v = world_vocab
    pieces: List[str] = []
    for table in (v._TIME_PHRASES, v._BIOME_PHRASES, v._WEATHER_PHRASES, v._CAMERA_PHRASES):
        for phrases in table.values():
            pieces += phrases
    colours = [c for cs in v._COLOUR_PHRASES.values() for c in cs]
    for phrases in v._SUBJECT_PHRASES.values():
        for phrase in phrases:
            pieces += [phrase.format(c=c) for c in colours] if "{c}" in phrase else [phrase]
    pieces += v._FILLERS + v._LINKS + ["with", ",", ".", ";"]
    pieces += [v.describe(attrs) for attrs in v.all_combinations()]
    return [p for p in pieces if p]


def training_token_ids(tokenizer: WordPieceTokenizer,
                       fragments: Iterable[str] = None) -> Set[int]:
    """Ids the generator's prompts can tokenize to (upper-case first letters included), plus
    the special tokens. Fails if a fragment needs [UNK]: the generator should not write it."""
    unk = tokenizer.id("[UNK]")
    ids: Set[int] = {tokenizer.id(s) for s in SPECIALS if tokenizer.id(s) >= 0}
    # Whitespace separates words before anything else, so each distinct chunk is tokenized once.
    chunks = {c for f in (generator_fragments() if fragments is None else fragments)
              for c in f.split()}
    for chunk in sorted(chunks):
        for text in (chunk, chunk[:1].upper() + chunk[1:]):
            for word, known in tokenizer.words(text):
                if not known:
                    raise ValueError(f"generator word {word!r} (in {chunk!r}) is [UNK]")
            ids.update(tokenizer.encode(text))
    ids.discard(-1)
    assert unk in ids
    return ids


def prune(full: Path, out: Path, float_dtype: str = "F16") -> dict:
    tensors, metadata = read_tensors(str(full))
    if PRUNED_KEY in metadata:
        raise ValueError(f"{full} is already pruned")
    config = json.loads(metadata[TEXT_CONFIG_KEY])
    vocab = load_vocab(metadata[VOCAB_KEY])
    tokenizer = WordPieceTokenizer(vocab, lowercase=bool(config.get("lowercase", True)),
                                   max_positions=int(config["max_positions"]))
    kept = np.array(sorted(training_token_ids(tokenizer)), dtype=np.int32)
    word = tensors[WORD_KEY]
    if word.shape[0] != len(vocab):
        raise ValueError(f"{full}: {word.shape[0]} embedding rows for {len(vocab)} tokens")
    tensors[WORD_KEY] = word[kept]
    tensors[KEPT_KEY] = kept
    pruned_config = dict(config, format=PRUNED_FORMAT)
    info = {"full_file": full.name, "vocab_size": len(vocab), "kept_rows": int(kept.size),
            "float_dtype": float_dtype}
    metadata = dict(metadata)
    metadata[TEXT_CONFIG_KEY] = json.dumps(pruned_config)
    metadata[PRUNED_KEY] = json.dumps(info)
    write_tensors(str(out), tensors, metadata, float_dtype)
    return info


def expand(pruned: Path, out: Path, prompts: Iterable[str]) -> dict:
    """The inverse, for a GPU machine that the full file cannot travel to: a file of the full
    format (the C++ engine loads it) whose embedding rows outside the kept ids are zero. Only
    prompts whose token ids were all kept encode as with the full encoder, so each of `prompts`
    is checked and a ValueError names any id that was not kept. Floats keep the pruned file's
    precision (F16 by default)."""
    tensors, metadata = read_tensors(str(pruned))
    if PRUNED_KEY not in metadata:
        raise ValueError(f"{pruned} is not a pruned encoder")
    info = json.loads(metadata[PRUNED_KEY])
    config = json.loads(metadata[TEXT_CONFIG_KEY])
    vocab = load_vocab(metadata[VOCAB_KEY])
    tokenizer = WordPieceTokenizer(vocab, lowercase=bool(config.get("lowercase", True)),
                                   max_positions=int(config["max_positions"]))
    kept = np.asarray(tensors.pop(KEPT_KEY), dtype=np.int64)
    kept_set = set(int(i) for i in kept)
    for prompt in prompts:
        missing = sorted(set(tokenizer.encode(prompt)) - kept_set)
        if missing:
            raise ValueError(f"prompt {prompt!r} needs token ids {missing}, not in {pruned.name}")
    rows = tensors[WORD_KEY]
    full = np.zeros((int(info["vocab_size"]), rows.shape[1]), dtype=rows.dtype)
    full[kept] = rows
    tensors[WORD_KEY] = full
    metadata = dict(metadata)
    del metadata[PRUNED_KEY]
    metadata[TEXT_CONFIG_KEY] = json.dumps(dict(config, format="strand-text-encoder"))
    write_tensors(str(out), tensors, metadata, str(info.get("float_dtype", "F16")))
    return {"kept_rows": int(kept.size), "vocab_size": int(info["vocab_size"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", type=Path, default=DEFAULT_FULL, help=f"default: {DEFAULT_FULL}")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    p.add_argument("--f32", action="store_true", help="keep float32 (default: F16, for uploads)")
    p.add_argument("--expand", type=Path, metavar="PRUNED",
                   help="the inverse: write PRUNED back in the full format (zero rows outside the "
                        "kept ids) to --out; each --prompt must use kept ids only")
    p.add_argument("--prompt", action="append", default=[], help="with --expand: a prompt to check")
    args = p.parse_args(argv)
    if args.expand is not None:
        info = expand(args.expand, args.out, args.prompt)
        print(f"wrote {args.out}: {info['kept_rows']} of {info['vocab_size']} embedding rows kept, "
              f"{len(args.prompt)} prompt(s) checked")
        return 0
    if not args.full.is_file():
        print(f"prune_text_encoder: {args.full} not found (python3 training/convert_minilm.py)",
              file=sys.stderr)
        return 1
    info = prune(args.full, args.out, "F32" if args.f32 else "F16")
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB): "
          f"{info['kept_rows']} of {info['vocab_size']} embedding rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
