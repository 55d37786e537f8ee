"""The werkbak: the professionals' web application (log in, see what is theirs, pick up, feed back, close)."""
