"""Faces of photographs aligned the way FFHQ was made, and aligned faces pasted back into their photographs.

    faces = FaceAligner(size=256).align_file("photo.jpg")    # [Face], most confident first (landmark-checked)
    save_alignment("alignment.json", [("photo_0.png", faces[0].transform)])
    photo, _ = read_photo("photo.jpg")                        # latentspaces.images
    pasted = paste_back(photo, edited, faces[0].transform)    # an edited face [3, R, R] in [-1, 1], back in place

The submodules, each importing only those above it in this list:

- `transform`: the FFHQ crop. `FaceTransform` (an aligned face's square in its photo, the FFHQ steps that
  resampled it, and the map between aligned and photo coordinates), `Face` (the image and its transform),
  `ffhq_quad` and `ffhq_align` (the procedure of NVlabs' ffhq-dataset script, described there step by step).
- `detect`: dlib's HOG and CNN face detectors (`Detection`, `keep_distinct`), the 68 landmarks and their
  second pass on the aligned face, which also tells faces from face-like things (`Candidate`: a face's
  landmarks agree between the passes), and `FaceAligner` / `align_faces`, which find and align every face
  (`FaceAligner.search` also returns the dropped candidates and whether the photo is grayscale).
- `files`: the alignment file (`save_alignment`, `load_alignment`, `ALIGNMENT_FORMAT`): JSON transforms under
  the aligned images' file names.
- `paste`: the blend masks (`face_polygon`, `face_mask`, `mask_image`) and `paste_back_` / `paste_back`,
  which warp an aligned (inverted, edited) face back into its photo.
"""

from .detect import (CNN_DETECTOR, DETECTORS, LANDMARKS_68, MAX_LANDMARK_SHIFT, REFINE_BOX, REFINE_SIZE, Candidate,
                     Detection, FaceAligner, FaceSearch, align_faces, keep_distinct)
from .files import ALIGNMENT_FORMAT, load_alignment, load_candidates, save_alignment
from .paste import MASKS, face_mask, face_polygon, mask_image, paste_back, paste_back_
from .transform import MAX_TRANSFORM, Box, Face, FaceTransform, Point, ffhq_align, ffhq_quad

__all__ = ["ALIGNMENT_FORMAT", "CNN_DETECTOR", "DETECTORS", "Box", "Candidate", "Detection", "Face", "FaceAligner",
           "FaceSearch", "FaceTransform", "LANDMARKS_68", "MASKS", "MAX_LANDMARK_SHIFT", "MAX_TRANSFORM", "Point",
           "REFINE_BOX", "REFINE_SIZE", "align_faces", "face_mask", "face_polygon", "ffhq_align", "ffhq_quad",
           "keep_distinct", "load_alignment", "load_candidates", "mask_image", "paste_back", "paste_back_", "save_alignment"]
