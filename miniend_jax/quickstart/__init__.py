"""The one-command MiniEnD pipeline: `python -m miniend_jax.quickstart --output_dir=DIR`.

sizes.py (what each --size trains), workspace.py (DIR, its settings and finished-stage
records), stage_gin.py (the experiment file of each training stage), pipeline.py (the
stages), report.py and plots.py (DIR/report.md, report.json and the figures).
"""
