"""Default pixel-rule data: what burned-in text is harmless, and which words mean PHI.

This is profile data kept as plain tuples so a profile can replace or extend any of it.
Patterns are matched case-insensitively against a whole piece of recognised text after
whitespace is collapsed (``re.fullmatch``); words are matched one token at a time.
"""

from __future__ import annotations

# Units seen next to numbers on imaging displays (scales, acquisition parameters).
UNITS: tuple[str, ...] = (
    "cm", "mm", "um", "m", "hz", "khz", "mhz", "db", "%", "fps", "bpm", "s", "ms", "sec",
    "kv", "kvp", "ma", "mas", "deg", "°", "cm/s", "mm/s", "m/s", "ml", "mgy", "mgy*cm",
    "mgy.cm", "mgycm", "x", "min", "t", "mt/m", "mm/hg", "mmhg", "cm2", "cm3", "mm2", "mm3",
    "ml/s", "hu", "w", "mw", "ppm", "rpm", "k",
)  # fmt: skip

_UNIT_RE = "(?:" + "|".join(sorted((u.replace("*", r"\*").replace(".", r"\.")
                                     for u in UNITS), key=len, reverse=True)) + ")"  # fmt: skip
_NUM = r"[-+]?\d{1,4}(?:[.,]\d{1,3})?"

# Whole pieces of text that are known to be harmless (PS3.15 E.1.1 lets a site keep
# burned-in text it has judged non-identifying: orientation, scale and acquisition labels).
DEFAULT_KEEP_TEXT: tuple[str, ...] = (
    r"[LRAPHFSI]",  # single orientation letters
    r"(?:RT|LT|RIGHT|LEFT|ANT|POST|SUP|INF|MED|LAT|AP|PA|LAO|RAO|LPO|RPO|CRAN|CAUD)",
    rf"(?:{_NUM}\s*{_UNIT_RE}\s*)+",  # "5 cm", "3.5 MHz", "60 %"
    rf"(?:[A-Z]{{1,4}}\s*[:=]?\s*{_NUM}\s*{_UNIT_RE}?\s*)+",  # "W 400 L 40", "MI 0.6", "TR 500"
    r"(?:IM|IMG|IMAGE|SE|SER|SERIES|SL|SLICE|FR|FRAME)\s*[:#]?\s*\d{1,4}(?:\s*/\s*\d{1,4})?",
    r"(?:H|F)?(?:FS|FP|FDR|FDL|HFS|HFP|HFDR|HFDL|FFS|FFP|FFDR|FFDL)",  # patient position
    r"\d{1,4}(?:\s*/\s*\d{1,4})?",  # small counters "12", "12/40"
    r"[xX]\s*\d(?:[.,]\d)?",  # zoom "x3"
)

# Words that, alone or together, make harmless annotation text: anatomy, views, acquisition
# and display vocabulary, device brands. Upper case, matched per token.
CLINICAL_WORDS: tuple[str, ...] = (
    # orientation, views, planes
    "LEFT", "RIGHT", "RT", "LT", "BILAT", "BILATERAL", "ANT", "ANTERIOR", "POST",
    "POSTERIOR", "SUP", "SUPERIOR", "INF", "INFERIOR", "MED", "MEDIAL", "LAT", "LATERAL",
    "PROX", "PROXIMAL", "DIST", "DISTAL", "MID", "UPPER", "LOWER", "AXIAL", "AX", "SAG",
    "SAGITTAL", "COR", "CORONAL", "OBL", "OBLIQUE", "TRANS", "TRANSVERSE", "TRV", "LONG",
    "LONGITUDINAL", "SHORT", "AXIS", "VIEW", "CC", "MLO", "ML", "LM", "XCCL", "SPOT", "MAG",
    "SUPINE", "PRONE", "ERECT", "UPRIGHT", "DECUBITUS", "STANDING", "SITTING", "PORTABLE",
    "SCOUT", "LOCALIZER", "LOCALISER", "TOPOGRAM", "SURVIEW", "PILOT", "REF", "REFERENCE",
    "HEAD", "FIRST", "FEET", "INSPIRATION", "EXPIRATION",
    # anatomy
    "ABDOMEN", "ABD", "ABDO", "PELVIS", "CHEST", "THORAX", "LUNG", "LUNGS", "HEART",
    "CARDIAC", "LIVER", "GALLBLADDER", "GB", "CBD", "SPLEEN", "PANCREAS", "KIDNEY",
    "KIDNEYS", "RENAL", "BLADDER", "PROSTATE", "UTERUS", "OVARY", "OVARIES", "ADNEXA",
    "CERVIX", "ENDOMETRIUM", "FETUS", "FETAL", "PLACENTA", "BREAST", "AXILLA", "THYROID",
    "NECK", "CAROTID", "CCA", "ICA", "ECA", "JUGULAR", "IJV", "AORTA", "AORTIC", "IVC",
    "SVC", "PORTAL", "VEIN", "VEINS", "ARTERY", "ARTERIES", "VESSEL", "VASCULAR", "BRAIN",
    "SKULL", "SPINE", "CERVICAL", "THORACIC", "LUMBAR", "SACRUM", "SACRAL", "HIP", "KNEE",
    "ANKLE", "FOOT", "SHOULDER", "ELBOW", "WRIST", "HAND", "FINGER", "TOE", "FEMUR",
    "TIBIA", "HUMERUS", "TESTIS", "TESTES", "SCROTUM", "SCROTAL", "APPENDIX", "BOWEL",
    "COLON", "STOMACH", "MUSCLE", "TENDON", "SUPRASPINATUS", "INFRASPINATUS",
    "SUBSCAPULARIS", "BICEPS", "ROTATOR", "CUFF", "JOINT", "SOFT", "TISSUE", "MASS",
    "LESION", "CYST", "NODULE", "NODE", "LYMPH", "EFFUSION", "FLUID", "STONE", "CALCULUS",
    "OB", "GYN", "PELVIC", "TV", "TA", "TRANSVAGINAL", "TRANSABDOMINAL", "ENDOCAVITY",
    "UPPER", "LOWER", "POLE", "CORTEX", "HILUM", "LOBE", "ISTHMUS", "VENTRICLE", "ATRIUM",
    "LV", "RV", "LA", "RA", "MV", "AV", "TV", "PV", "LVOT", "RVOT", "APICAL", "PARASTERNAL",
    "SUBCOSTAL", "SUPRASTERNAL", "CHAMBER", "PLAX", "PSAX", "A4C", "A2C", "A3C",
    "TRACHEA", "DIAPHRAGM", "RIB", "RIBS", "CLAVICLE", "STERNUM", "MANDIBLE", "SINUS",
    "ORBIT", "ORBITS", "TEMPORAL", "BONE", "BONES", "VERTEBRA", "DISC",
    # procedures, sequences, acquisition and display labels
    "CT", "MR", "MRI", "US", "XR", "CR", "DX", "MG", "NM", "PET", "SPECT", "XA", "RF",
    "MAMMO", "MAMMOGRAPHY", "TOMO", "TOMOSYNTHESIS", "CONTRAST", "NONCONTRAST", "NON",
    "WITH", "WITHOUT", "WO", "W", "IV", "ORAL", "PRE", "POST", "ARTERIAL", "VENOUS",
    "DELAYED", "PHASE", "ENHANCED", "UNENHANCED", "T1", "T2", "FLAIR", "DWI", "ADC", "SWI",
    "GRE", "TSE", "FSE", "SE", "IR", "STIR", "FATSAT", "FS", "DIXON", "MPRAGE", "TOF",
    "MRA", "CTA", "PERFUSION", "BOLUS", "SCAN", "SERIES", "IMAGE", "IMAGES", "SLICE",
    "THICKNESS", "RECON", "MPR", "MIP", "VR", "KERNEL", "STANDARD", "SHARP", "SMOOTH",
    "WINDOW", "LEVEL", "WW", "WL", "ZOOM", "GAIN", "DEPTH", "FREQ", "FREQUENCY", "POWER",
    "DYN", "DYNAMIC", "RANGE", "DR", "PERSIST", "PERSISTENCE", "FOCUS", "FOCAL", "ZONE",
    "FR", "FRAME", "RATE", "PRF", "WF", "FILTER", "SV", "ANGLE", "DOPPLER", "COLOR",
    "COLOUR", "CF", "CFM", "PW", "CW", "PD", "PDI", "PWR", "THI", "HI", "RES", "PEN", "GEN",
    "HGEN", "HRES", "GENERAL", "ADV", "ADVANCED", "MAP", "MAPE", "DTCE", "SRI", "SPECKLE",
    "COMPOUND", "HARMONIC", "HARMONICS", "PRESET", "PROBE", "TRANSDUCER", "LINEAR",
    "CURVED", "CONVEX", "SECTOR", "PHASED", "ARRAY", "MI", "TI", "TIS", "TIB", "TIC",
    "ACOUSTIC", "OUTPUT", "LOW", "HIGH", "MEDIUM", "NORMAL", "FAST", "SLOW", "AUTO",
    "MANUAL", "DIST", "DISTANCE", "AREA", "VOL", "VOLUME", "LENGTH", "WIDTH", "HEIGHT",
    "DIAM", "DIAMETER", "CIRC", "VEL", "VELOCITY", "PEAK", "MEAN", "MAX", "MIN", "PSV",
    "EDV", "RI", "PI", "SD", "HR", "BPM", "EF", "GA", "EDD", "BPD", "HC", "AC", "FL",
    "CRL", "EFW", "AFI", "MEASURE", "MEASUREMENT", "CALIPER", "CURSOR", "MARKER", "SCALE",
    "RULER", "LIVE", "FREEZE", "CINE", "LOOP", "CLIP", "STORE", "SAVE", "PRINT", "END",
    "START", "STOP", "TIME", "SEC", "ACQ", "ACQUISITION", "EXPOSURE", "DOSE", "CTDI",
    "CTDIVOL", "DLP", "KV", "KVP", "MA", "MAS", "PITCH", "ROTATION", "COLLIMATION",
    "TILT", "GANTRY", "TABLE", "POSITION", "LOC", "FOV", "DFOV", "MATRIX", "NEX", "NSA",
    "ETL", "BW", "TR", "TE", "FA", "FLIP", "TSENSE", "SENSE", "ASSET", "GRAPPA",
    "AVERAGES", "COIL", "BODY", "NEURO", "MSK", "VASC", "CARD", "ECHO", "STRESS", "REST",
    "SYSTOLE", "DIASTOLE", "SYS", "DIA", "ED", "ES", "FLOW", "WALL", "MOTION", "BREATH",
    "HOLD", "RESP", "TRIGGER", "GATED", "ECG", "EKG", "LEAD", "NO", "YES", "ON", "OFF",
    "AND", "OR", "OF", "THE", "TO", "IN", "AT", "FOR", "BY", "PER", "INJ", "INJECTION",
    "ASPIRATION", "BIOPSY", "GUIDED", "GUIDANCE", "NEEDLE", "DRAIN", "CATHETER", "LINE",
    "TUBE", "STENT", "IMPLANT", "CLIP", "MARKER", "POST-OP", "PREOP", "POSTOP", "FOLLOW",
    "UP", "ROUTINE", "PROTOCOL", "STUDY", "EXAM", "EXAMINATION", "SCREENING",
    "DIAGNOSTIC", "PROCESSED", "FOR", "PRESENTATION", "RAW", "MONO", "BW", "INVERT",
    "SUBTRACTED", "SUB", "DSA", "FLUORO", "FLUOROSCOPY", "PULSE", "PULSED", "CONT",
    "CONTINUOUS", "RUN", "DYNA", "TOTAL", "LAYER", "NEW", "OLD", "COMPARE", "COMPARISON",
    "BASELINE", "CURRENT", "PRIOR", "SUMMARY", "REPORT", "PAGE", "OF", "WO", "W/O", "W/",
    # device brands (device identity is handled in the header; in pixels it is not PHI)
    "SIEMENS", "HEALTHINEERS", "PHILIPS", "GE", "HEALTHCARE", "TOSHIBA", "CANON", "HITACHI",
    "FUJI", "FUJIFILM", "SAMSUNG", "MEDISON", "MINDRAY", "ESAOTE", "SONOSITE", "TERASON",
    "ALOKA", "AGFA", "KODAK", "CARESTREAM", "HOLOGIC", "KONICA", "MINOLTA", "SHIMADZU",
    "VOLUSON", "LOGIQ", "VIVID", "EPIQ", "AFFINITI", "ACUSON", "SEQUOIA", "APLIO", "IU22",
    "SELENIA", "DIMENSIONS", "SOMATOM", "AERA", "SKYRA", "PRISMA", "VIDA", "INGENIA",
    "ACHIEVA", "SIGNA", "DISCOVERY", "OPTIMA", "REVOLUTION", "AQUILION", "BRILLIANCE",
    "ICT", "IQON", "TERASON", "USMART",
)  # fmt: skip

# Label words that announce an identifier; the text next to them is PHI of that kind.
PHI_LABELS: tuple[tuple[str, str], ...] = (
    ("NAME", "name"), ("PATIENT", "name"), ("PAT", "name"), ("PT", "name"),
    ("PHYSICIAN", "name"), ("DOCTOR", "name"), ("DR", "name"), ("REF", "name"),
    ("REFERRING", "name"), ("OPERATOR", "name"), ("SONOGRAPHER", "name"),
    ("TECH", "name"), ("TECHNOLOGIST", "name"), ("MRS", "name"), ("MISS", "name"),
    ("ID", "id"), ("MRN", "id"), ("PID", "id"), ("ACC", "id"), ("ACCESSION", "id"),
    ("ACCN", "id"), ("SSN", "id"), ("NHS", "id"), ("MEDICARE", "id"), ("RECORD", "id"),
    ("DOB", "date"), ("BIRTH", "date"), ("BORN", "date"), ("BIRTHDATE", "date"),
    ("DATE", "date"), ("AGE", "other_phi"), ("SEX", "other_phi"), ("PHONE", "other_phi"),
    ("TEL", "other_phi"), ("ADDRESS", "other_phi"), ("EMAIL", "other_phi"),
)  # fmt: skip

# Words that mark an organisation (institution recogniser).
INSTITUTION_WORDS: tuple[str, ...] = (
    "HOSPITAL", "HOSP", "CLINIC", "CLINICS", "CLINICAL", "MEDICAL", "MEDICINE", "CENTER",
    "CENTRE", "HEALTH", "HEALTHCARE", "UNIVERSITY", "UNIV", "INSTITUTE", "INFIRMARY",
    "FOUNDATION", "RADIOLOGY", "IMAGING", "DEPARTMENT", "DEPT", "SANATORIUM", "PRACTICE",
    "ASSOCIATES", "GROUP", "NHS", "TRUST", "KLINIKUM", "HOPITAL", "OSPEDALE", "CHU",
)  # fmt: skip

# Words inside institution names too generic to identify one on their own.
GENERIC_INSTITUTION_WORDS: frozenset[str] = frozenset(
    (*INSTITUTION_WORDS, "GENERAL", "OF", "THE", "AND", "ST", "SAINT", "REGIONAL",
     "COMMUNITY", "MEMORIAL", "CHILDRENS", "CHILDREN'S", "COUNTY", "CITY", "NATIONAL")
)  # fmt: skip

# Name prefixes that make the following word a person name.
HONORIFICS: tuple[str, ...] = ("DR", "MR", "MRS", "MS", "MISS", "PROF", "SR", "SRA")

# SOP Class UIDs (PS3.4 Annex B) whose instances are multi-slice stacks where sampling is
# safe when the profile asks for it.
CT_MR_LIKE_MODALITIES: tuple[str, ...] = ("CT", "MR", "PT", "NM")
