"""Inventory: forecast backtests and policy replays."""
