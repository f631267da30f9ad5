"""Each application's demo (``deepmed demo --app NAME``): synthetic (or shared real) data, training, inference
and the metric against the application's named baseline."""
