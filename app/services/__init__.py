"""The rules of reglab, free of HTTP and of Keras. Each function takes the session
keyword-only and owns its commit."""
