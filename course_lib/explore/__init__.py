"""Interactive explorers: every ipywidgets explorer of the course, drawn with one figure helper.

    figures      the display style: figure to PNG, image to array, a live widget with a static fallback
    temperature  notebook 01: the softmax over candidates and the push on each negative
    views        notebook 02: each SimCLR augmentation on or off
    embedding    notebooks 03, 06 and 07: a t-SNE map and the nearest neighbours in feature space, by class and role
    adaptation   notebook 05: MAML's fit to a new sinusoid after k inner steps
    spectrum     notebook 08: the singular values of the projections across training, collapse or not

ipywidgets and IPython are imported only when an explorer is built or shown.
"""
