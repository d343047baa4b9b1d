"""The live pipeline page and its JSON/SSE API, served on the health address.

document.py builds the status document (sampled windows in windows.py), preview.py
turns a pipeline's newest result into a JPEG, server.py routes the requests, and
page.html (package data, no external resources) renders it all in a browser.
"""
