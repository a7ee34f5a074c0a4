"""The tagger's email: templates, composing, unsubscribe tokens, DKIM, the SMTP sender, metrics.

See sender.py for how a journey step is sent at most once across crashes.
"""
