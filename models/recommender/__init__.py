"""Recommender: the example of a model whose quality is what users click.

``sessions`` makes synthetic recommendation traffic (slates of items shown to users, with
clicks drawn from a known truth) whose clicks shift in the holiday weeks, and says when each
click arrives; ``contract`` says what valid training data looks like; ``pipeline`` fits the
click-through model (or a deliberately worse popularity model); ``ranking_metrics`` judges a
model by the clicks on the items it ranks first; ``train`` registers a version in MLflow;
``served_model`` is what every version serves: ``{"p_click": ...}`` per candidate item.
"""
