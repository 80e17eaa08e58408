"""Execution algorithms (parents and children), TCA and smart order routing."""
