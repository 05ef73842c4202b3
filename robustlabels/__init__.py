"""robustlabels: learn from data whose labels are partly wrong, and find those wrong labels.

``import robustlabels`` stays light: heavy pieces (Lightning, timm, FAISS, cleanlab) load on first use.
"""

__version__ = "0.1.0"
