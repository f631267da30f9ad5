"""Interactive (click-guided) segmentation, the user-facing API: clicks (``clicks``), the simulated-click
protocol (``simulate``) and a warm session that refines click after click (``session``). The application and
its refinement live in ``deepmed.applications.interactive``; clicks, click simulation and guidance maps in
``deepmed.io.clicks``, ``deepmed.transforms.click_simulation`` and ``deepmed.transforms.guidance``."""
