"""Document internals: reading PDF/Office files (readers) and producing deliverables (sheets, memo, deck)."""
