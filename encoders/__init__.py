"""Encoders that initialise inversions (F encoder, e4e-style W+ encoder) and compensation heads (SDIC).

    from encoders import load_encoder
    enc = load_encoder("default-f")                       # shipped, for the embedded default generator
    HybridInverter(ls.FZPlus(G), encoder=enc).invert(x)   # f0 = E(x), detail codes at their mean

Initialising encoders implement `latentspaces.interfaces.CodeInitializer` (`init_code(space, targets)`);
compensation heads implement `latentspaces.interfaces.CompensationHead` (`compensate`, `edit`).
"""

from .f_encoder import FEncoder
from .io import COMPENSATION_HEADS, encoder_names, load_encoder, load_head, read_encoder_meta, save_encoder
from .gradstyle import GradStyle, default_gradstyle_layers
from .hfgi import HFGI, default_hfgi_layer
from .reganie import ReGANIE
from .sdic import SDIC, default_sdic_layer
from .sdic_released import SDICReleased
from .wplus_encoder import WPlusEncoder
from .released import load_e4e_encoder, load_psp_encoder

__all__ = ["COMPENSATION_HEADS", "encoder_names", "FEncoder", "load_encoder", "load_head", "read_encoder_meta", "save_encoder", "WPlusEncoder",
           "load_e4e_encoder", "load_psp_encoder", "SDIC", "SDICReleased", "default_sdic_layer", "HFGI",
           "default_hfgi_layer", "ReGANIE", "GradStyle", "default_gradstyle_layers"]
