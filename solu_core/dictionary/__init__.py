"""Sparse dictionaries (TopK sparse autoencoders) over a recorded MLP hook, trained, measured and indexed as a
hook of the store. The modules, bottom to top:

- ``config``: the training settings (``DictionaryConfig``), their checks and defaults;
- ``sae``: the TopK model with its sparse forward and backward passes and the AuxK loss;
- ``rows``: a hook's rows chunk by chunk (dense chunks, or the recorded model run again) and the training plan;
- ``metrics``: FVU, L0, dead / dense features, alignment, loss recovered with the reconstruction spliced in;
- ``train``: the trainer, its resume state and the saved SAELens folder (``train_dictionary``);
- ``index``: a dictionary's features indexed like neurons, their logit effects (``index_features``).

The SAELens on-disk layout itself (read and written without torch) is store.format.dictionary.
"""
