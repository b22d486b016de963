"""chatlog's command line and the embedded servers of `chatlog dev` and the tests."""
