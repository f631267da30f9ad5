"""nnU-Net v2 models: their result folders read safely, and nnU-Net's inference re-implemented faithfully.

``folder`` reads a result folder (``dataset.json``, ``plans.json``, ``fold_N/checkpoint_*.pth``), ``checkpoint``
unpickles a checkpoint with ``torch.load(weights_only=True)`` and an explicit allow-list, ``network`` rebuilds the
network from the plans with nnU-Net's own ``dynamic_network_architectures`` (an optional extra), ``resampling``,
``preprocessing``, ``sliding_window`` and ``export`` follow nnU-Net's predictor step by step. nnunetv2 itself is
never imported (it is a test-only dependency that checks this package).
"""
