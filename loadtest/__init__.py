"""Load generation and SRE tools: open-loop load beside the no-op floor, reports."""
