"""What people see of their releases, from the same plain status rows: the text of ``sluice
status`` and ``sluice rollout`` (with each InferenceGraph's members, :mod:`.graph_view`), and the
read-only HTML page at ``/`` of ``sluice serve``."""

__all__: list[str] = []
