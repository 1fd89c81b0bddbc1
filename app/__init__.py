"""reglab's server: REST API, event streams and the queue. It never imports TensorFlow."""
