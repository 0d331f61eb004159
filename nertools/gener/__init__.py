"""GeNER: "Which [TYPE]?" questions, the phrase index, normalisation rules, dictionaries and matching."""
