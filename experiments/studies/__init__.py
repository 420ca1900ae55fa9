"""The studies behind the `latentspaces` command: each regenerates one table or figure into a run folder.

Each study's function takes its typed config whole (`CompareConfig`, `IdentityCurvesConfig`,
`CompensationConfig`, `FLayerSweepConfig`; `experiments.config`), the same object its command builds from
its flags; `presets` holds the preset numbers they share.

- `inversions`: the chunked, resumable inversions that `space_comparison` and `identity_curves` share
- `space_comparison`: reconstruction metrics per latent space (table + grid)
- `identity_curves`: identity similarity vs edit step per space (curves + random-direction grid)
- `paired_statistics`: wins and Wilcoxon p of one space against another on the same targets and edits
- `compensation`: base encoder vs compensation head vs PTI vs HybridInverter F/Z+
- `encoder_init`: MSE vs step from encoder and mean starts (`python -m experiments.studies.encoder_init`)
"""
