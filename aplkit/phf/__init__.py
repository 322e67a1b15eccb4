"""The experiment of "Pretraining Language Models with Human Preferences" (Korbak et al., 2023) on the embedded IMDB testbed.

``config`` (the ``phf`` preset's sections), ``segments`` (reviews → scored sentences), ``measure``
(misalignment of samples, LM loss, KL from θ0) and ``experiment`` (the resumable run). The
objectives themselves live beside DPO in ``aplkit.objectives``.
"""
