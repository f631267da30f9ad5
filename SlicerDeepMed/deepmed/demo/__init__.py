"""The main job: ``deepmed demo`` trains, segments and evaluates on an embedded synthetic cohort."""
