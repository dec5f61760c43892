"""SAM proposals (segment-anything's automatic mask generator), a union of generators, and the train-sam task."""
