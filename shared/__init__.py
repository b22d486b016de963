"""Event contracts and neutral infrastructure shared by chatlog's services."""
