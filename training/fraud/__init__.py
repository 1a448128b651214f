"""Fraud training: the XGBoost tree side of the ensemble, exported for serving as an ONNX graph
(probability) and as a TreeEnsemble (margin and TreeSHAP contributions)."""
