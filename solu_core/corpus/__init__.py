"""An offline training corpus: real text found on the machine, a byte-level BPE, token shards.

Text comes from the Python standard library's own source (always present wherever Python is:
code and docstrings, about 12 MB without its tests), plus whatever the user points at (files,
folders, JSONL with a text field), plus optional prose installed from a package registry
(see ``PROSE_SOURCES``). Nothing is downloaded.

Why it is built the way it is:
- Documents are deduplicated by content hash (the stdlib ships a few identical files) and split
  train/val *by document*, so validation loss measures generalisation to unseen files rather than
  to unseen windows of files already trained on. Order and split come from seeded hashes of each
  document's content, so they are deterministic for a seed and do not depend on file-system order.
- The tokenizer is trained on the train split only, with ``<|endoftext|>`` as id 0. Every document
  is written as ``<|endoftext|> doc tokens``, so that token is both separator and BOS.
- Tokens are written once, as ``.npy`` shards (uint16 while the vocabulary fits) that training and
  recording memory-map. Everything is built in a temporary sibling directory and swapped into place
  at the end, so a crash or a bad input never leaves a half-written corpus.

On disk (``out_dir``)::

    manifest.json           sources, sizes, hashes, split counts, skipped files, tokenizer facts
    documents.jsonl         one line per document: source, name, sha256, bytes, split
    tokenizer.json          HF tokenizers byte-level BPE
    {train,val}/tokens_00000.npy     [n] uint16/uint32 token ids
    {train,val}/doc_offsets_00000.npy [n_docs] int64 position of each document's <|endoftext|>

The modules, in the order a corpus is built: ``config`` (``CorpusConfig``, the format's constants),
``sources`` (finding and reading text), ``split`` (dedup, mix, train/val), ``bpe`` (the tokenizer),
``build`` (``build_corpus``), ``folder`` (a corpus read back: manifest, tokenizer, splits), and
``text_streams`` (the text `record` reads from files).
"""
