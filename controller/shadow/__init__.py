"""Shadow: before its first canary step, a challenger answers copies of live requests.

The pure core: ``phase`` reads from an InferenceService whether Git asks for a shadow phase,
``mirror`` builds, validates and edits the Istio VirtualService that copies traffic on a
cluster, ``samples`` turns the prediction log's pairs into the judge's arrays, ``statistics``
holds the paired tests and ``judge`` gives the verdict; for a classifier (``classes`` in the
policy), ``class_samples`` reads decisions and class-name labels and ``class_judge`` judges
them per class. The rollout's services: ``analysis`` reads the mirrored answers and judges
them, ``mirror_commits`` says what the commits that add and remove the mirror edit.

The package spans two layers (pyproject.toml's import-linter contracts place its modules one by
one), so this file imports nothing.
"""

__all__: list[str] = []
