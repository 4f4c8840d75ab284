// Mirror of assembly/abi.ts. The core is the source of truth: loadCore()
// checks ABI_VERSION and the sizes below at load, and test/abi.test.ts checks
// every entry of ABI against the core's `abi_const`.

export const ABI_VERSION = 1;

export const MAX_BATCH = 1024;
export const DATA_CAP = 4 << 20;

export const BH_COUNT = 0;
export const BH_FLAGS = 4;
export const BH_NOW = 8;
export const BH_DONE = 16;
export const BH_STATUS = 20;
export const BH_SIZE = 64;

export const STATUS_OK = 0;
export const STATUS_BAD_COUNT = 1;
export const STATUS_NOT_READY = 2;

export const D_DATA_OFF = 0;
export const D_CAP_LEN = 4;
export const D_WIRE_LEN = 8;
export const D_PACKET_ID = 12;
export const D_TS = 16;
export const D_HW_PROTO = 24;
export const D_IN_ROLE = 26;
export const D_OUT_ROLE = 27;
export const D_HOOK = 28;
export const D_QUEUE = 30;
export const DESC_SIZE = 32;

export const ROLE_NONE = 0;
export const ROLE_EXTERNAL = 1;
export const ROLE_INTERNAL = 2;

export const HOOK_PREROUTING = 0;
export const HOOK_INPUT = 1;
export const HOOK_FORWARD = 2;
export const HOOK_OUTPUT = 3;
export const HOOK_POSTROUTING = 4;

export const V_VERDICT = 0;
export const V_FLAGS = 1;
export const V_REASON = 2;
export const V_RULE = 4;
export const VERDICT_SIZE = 8;

export const VERDICT_DROP = 0;
export const VERDICT_ACCEPT = 1;
export const RULE_NONE = 0xffffffff;

export const CFG_DEFAULT_VERDICT = 0;
export const CFG_TABLE_CAP = 4;
export const CFG_MAX_RULES = 8;
export const DEFAULT_TABLE_CAP = 32 << 20;
export const DEFAULT_MAX_RULES = 65536;
export const CFG_MAX_FLOWS = 12;
export const CFG_HASH_SEED = 16;
export const CFG_MAX_FRAGS = 24;
export const CFG_TIMEOUTS = 32;
export const DEFAULT_MAX_FLOWS = 65536;
export const MAX_FLOWS_LIMIT = 1 << 21;
export const DEFAULT_MAX_FRAGS = 4096;
export const CONFIG_SIZE = 256;

export const REASON_SLOTS = 128;
export const C_REASONS = 0;
export const C_VERDICTS = REASON_SLOTS * 16;
export const C_BATCHES = C_VERDICTS + 32;
export const C_PACKETS = C_BATCHES + 8;
export const C_BAD_BATCHES = C_PACKETS + 8;
export const C_FLOWS_LIVE = C_BAD_BATCHES + 8;
export const C_FLOWS_CREATED = C_FLOWS_LIVE + 8;
export const C_FLOWS_EXPIRED = C_FLOWS_CREATED + 8;
export const C_FLOWS_EVICTED = C_FLOWS_EXPIRED + 8;
export const C_FLOWS_REFUSED = C_FLOWS_EVICTED + 8;
export const C_FLOWS_ENDED = C_FLOWS_REFUSED + 8;
export const C_FRAGS_LIVE = C_FLOWS_ENDED + 8;
export const C_FRAGS_EXPIRED = C_FRAGS_LIVE + 8;
export const COUNTERS_SIZE = C_FRAGS_EXPIRED + 8;

export const P_FAMILY = 0;
export const P_PROTO = 1;
export const P_FLAGS = 2;
export const P_TCP_FLAGS = 3;
export const P_SPORT = 4;
export const P_DPORT = 6;
export const P_ICMP_TYPE = 8;
export const P_ICMP_CODE = 9;
export const P_L4_OFF = 10;
export const P_FRAG_ID = 12;
export const P_FRAG_OFF = 16;
export const P_EXT_COUNT = 18;
export const P_L4_LEN = 20;
export const P_IP_LEN = 24;
export const P_TCP_SEQ = 28;
export const P_TCP_ACK = 32;
export const P_TCP_WIN = 36;
export const P_ICMP_ID = 38;
export const P_TCP_WSCALE = 40;
export const P_TCP_PAYLOAD = 44;
export const P_FRAG_DATA = 42;
export const P_TTL = 41;
export const P_SRC = 48;
export const P_DST = 64;
export const P_IN_FAMILY = 80;
export const P_IN_PROTO = 81;
export const P_IN_SPORT = 84;
export const P_IN_DPORT = 86;
export const P_IN_SRC = 88;
export const P_IN_DST = 104;
export const PKT_SIZE = 128;

// The flow entry (assembly/conntrack/entry.ts), for Core.flows().
export const E_STATE = 4;
export const E_PROTO = 5;
export const E_FAMILY = 6;
export const E_FLAGS = 7;
export const E_PORT_A = 8;
export const E_PORT_B = 10;
export const E_CTX = 12;
export const E_EXPIRES = 16;
export const E_RULE = 24;
export const E_ADDR_A = 32;
export const E_ADDR_B = 48;
export const FLOW_SIZE = 96;
export const EF_ORIG_IS_B = 1;

export const PF_FRAGMENT = 1;
export const PF_FIRST_FRAG = 2;
export const PF_MORE_FRAGS = 4;
export const PF_HAS_PORTS = 8;
export const PF_ICMP_ERROR = 16;
export const PF_IP_OPTIONS = 32;

// In the order of the core's `AbiConst` enum: abi_const(i) answers ABI_IDS[i].
export const ABI_IDS: ReadonlyArray<readonly [string, number]> = [
  ["VERSION", ABI_VERSION], ["MAX_BATCH", MAX_BATCH], ["DATA_CAP", DATA_CAP],
  ["BH_COUNT", BH_COUNT], ["BH_FLAGS", BH_FLAGS], ["BH_NOW", BH_NOW], ["BH_DONE", BH_DONE],
  ["BH_STATUS", BH_STATUS], ["BH_SIZE", BH_SIZE],
  ["D_DATA_OFF", D_DATA_OFF], ["D_CAP_LEN", D_CAP_LEN], ["D_WIRE_LEN", D_WIRE_LEN],
  ["D_PACKET_ID", D_PACKET_ID], ["D_TS", D_TS], ["D_HW_PROTO", D_HW_PROTO],
  ["D_IN_ROLE", D_IN_ROLE], ["D_OUT_ROLE", D_OUT_ROLE], ["D_HOOK", D_HOOK], ["D_QUEUE", D_QUEUE],
  ["DESC_SIZE", DESC_SIZE],
  ["V_VERDICT", V_VERDICT], ["V_FLAGS", V_FLAGS], ["V_REASON", V_REASON], ["V_RULE", V_RULE],
  ["VERDICT_SIZE", VERDICT_SIZE],
  ["CFG_DEFAULT_VERDICT", CFG_DEFAULT_VERDICT],
  ["CFG_TABLE_CAP", CFG_TABLE_CAP], ["CFG_MAX_RULES", CFG_MAX_RULES], ["CFG_MAX_FLOWS", CFG_MAX_FLOWS],
  ["CFG_HASH_SEED", CFG_HASH_SEED], ["CFG_MAX_FRAGS", CFG_MAX_FRAGS], ["CFG_TIMEOUTS", CFG_TIMEOUTS], ["CONFIG_SIZE", CONFIG_SIZE],
  ["REASON_SLOTS", REASON_SLOTS], ["C_REASONS", C_REASONS], ["C_VERDICTS", C_VERDICTS],
  ["C_BATCHES", C_BATCHES], ["C_PACKETS", C_PACKETS], ["C_BAD_BATCHES", C_BAD_BATCHES], ["C_FLOWS_LIVE", C_FLOWS_LIVE],
  ["COUNTERS_SIZE", COUNTERS_SIZE],
  ["PKT_SIZE", PKT_SIZE], ["P_FAMILY", P_FAMILY], ["P_PROTO", P_PROTO], ["P_FLAGS", P_FLAGS],
  ["P_SPORT", P_SPORT], ["P_DPORT", P_DPORT], ["P_SRC", P_SRC], ["P_DST", P_DST],
  ["P_IN_FAMILY", P_IN_FAMILY], ["P_IN_PROTO", P_IN_PROTO], ["P_IN_SPORT", P_IN_SPORT],
  ["P_IN_DPORT", P_IN_DPORT], ["P_IN_SRC", P_IN_SRC], ["P_IN_DST", P_IN_DST],
  ["P_TCP_WSCALE", P_TCP_WSCALE], ["P_TCP_PAYLOAD", P_TCP_PAYLOAD],
  ["E_STATE", E_STATE], ["E_PROTO", E_PROTO], ["E_FAMILY", E_FAMILY], ["E_FLAGS", E_FLAGS],
  ["E_PORT_A", E_PORT_A], ["E_PORT_B", E_PORT_B], ["E_CTX", E_CTX], ["E_EXPIRES", E_EXPIRES],
  ["E_RULE", E_RULE], ["E_ADDR_A", E_ADDR_A], ["E_ADDR_B", E_ADDR_B], ["FLOW_SIZE", FLOW_SIZE], ["EF_ORIG_IS_B", EF_ORIG_IS_B],
];
