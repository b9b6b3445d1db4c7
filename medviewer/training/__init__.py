"""Training in MedViewer: one loop for the shipped demo models and the user's own versions.

`loop.fit` trains with progress events, the best checkpoint and early stopping; `recipes`
holds each task's model, loss, optimiser and schedule. `medviewer train JOB.json` (`run`,
`job`) builds the data from workspace annotations and demo phantoms (`datasets`, `phantoms`,
`split`, `augment`), trains, exports a parity-checked candidate (`export`) and compares it with
the version in use through ONNX Runtime (`evaluate`, `metrics`); `distributed` spreads a job
over processes and machines. The labs' demo recipes train the shipped models through `plan`,
with the same loop and recipes.
"""
