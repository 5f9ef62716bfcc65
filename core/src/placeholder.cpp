// Keeps strand_core non-empty while the engine sources land.
namespace strand { int core_placeholder() { return 0; } }
