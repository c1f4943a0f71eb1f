"""The model zoo, beside the pipeline: the registry of pretrained and published weights (`registry`, with
weights.json), verified resumable downloads (`download`), whether a caffemodel fits a net layer by layer (`fit`),
and what a model is -- its caffemodel with its variant, mean and training list (`models`, run record)."""
