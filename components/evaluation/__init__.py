"""Offline evaluation: ranking metrics, protocols, the fusion weights tuned on valid, cold-start figures, reports."""
