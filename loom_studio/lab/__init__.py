"""Loom in JupyterLab: the studio served behind the Jupyter server (:mod:`.proxy`).

The JupyterLab extension itself (launcher card, command, sidebar) is TypeScript in
``labextension/`` at the repository's root, shipped prebuilt in ``loom_studio/labextension``
(docs/jupyterlab.md).
"""
