"""Sphinx configuration of the course website (`make book`; tools/build_book.py copies this file into the
staged sources). Lessons are rendered from their stored outputs: nothing is executed."""
project = "ptlm-course"
author = "ptlm-course authors"
html_title = "ptlm-course: pretrained language models, built by hand"

extensions = ["myst_nb", "sphinx-mathjax-offline"]   # MathJax served from the site itself: math renders offline
nb_execution_mode = "off"                    # the committed outputs of a real full-budget run
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3                     # links to "#section" inside a page
exclude_patterns = ["exercises/**", "**.ipynb_checkpoints", "_build"]

# Widgets need a running kernel: show their plain-text fallback ("Run this cell for the interactive ...")
# instead of loading ipywidgets' JavaScript from a CDN, so the site works offline.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_ipywidgets_js = {}

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": False,            # each lesson links its notebook and exercise itself
}
html_last_updated_fmt = None
suppress_warnings = ["myst.header"]          # notebooks start with the set-up cell, then "# NN · Topic"
