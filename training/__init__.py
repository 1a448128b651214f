"""Builds the models in model_repo/ from data: the simulator's or real data sets."""
