"""Inventory: demand forecasts, their reconciliation across levels, and reorder points."""
