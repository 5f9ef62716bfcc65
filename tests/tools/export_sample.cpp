// strand-export-sample DIR: writes DIR/sample.otio, DIR/sample.fcpxml and DIR/sample.edl from one
// fixed timeline description, for training/tests/test_export_timelines.py (which states the same
// description independently and checks the files with OpenTimelineIO, xmllint and an EDL parser).
// Media paths point into DIR/media/ (the files themselves are not written here).
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "strand/export.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: strand-export-sample DIR\n");
    return 2;
  }
  try {
    const std::filesystem::path dir = std::filesystem::absolute(argv[1]);
    std::filesystem::create_directories(dir);
    const std::string media = (dir / "media").string();
    strand::TimelineDescription t;
    t.name = "Strand sample & test";
    t.rate = {24000, 1001};  // 23.976: the hardest common rate for frame-exact arithmetic
    t.width = 832;
    t.height = 480;
    t.clips = {
        {"main", media + "/main.mov", 240, 10, 130, 0},
        {"branch b", media + "/branch b.mov", 96, 0, 48, 12},
        {"main again", media + "/main.mov", 240, 200, 240, 0},
    };
    t.markers = {
        {0, "prompt: a red fox", strand::MarkerKind::prompt_change, "a red fox"},
        {30, "prompt: snow", strand::MarkerKind::prompt_change, "a fox in snow"},
        {125, "gap note", strand::MarkerKind::note, ""},
        {140, "branch b", strand::MarkerKind::branch_point, "from main at 100"},
        {200, "main again", strand::MarkerKind::note, ""},
    };
    strand::write_timeline((dir / "sample.otio").string(), "otio", t);
    strand::write_timeline((dir / "sample.fcpxml").string(), "fcpxml", t);
    strand::write_timeline((dir / "sample.edl").string(), "edl", t);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "strand-export-sample: %s\n", e.what());
    return 1;
  }
  return 0;
}
