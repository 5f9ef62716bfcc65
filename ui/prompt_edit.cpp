#include "ui/prompt_edit.h"

#include <QKeyEvent>
#include <QSyntaxHighlighter>
#include <QTextBlock>
#include <algorithm>

namespace strand::ui {

// Colours every word of the block by its span from the classifier. The classifier works on the
// whole text; a block is a line, so spans are shifted by the block's position.
class PromptHighlighter : public QSyntaxHighlighter {
 public:
  PromptHighlighter(PromptEdit* edit) : QSyntaxHighlighter(edit->document()), edit_(edit) {}

 protected:
  void highlightBlock(const QString& text) override {
    if (!edit_->classifier_) return;
    // Classify the whole document once per pass (prompts are short).
    const QString all = document()->toPlainText();
    if (all != cached_text_) {
      cached_text_ = all;
      cached_spans_ = edit_->classifier_(all);
    }
    const int offset = currentBlock().position();
    QTextCharFormat known;
    known.setForeground(QColor(150, 220, 160));
    QTextCharFormat unknown;
    unknown.setForeground(QColor(255, 170, 80));
    unknown.setUnderlineStyle(QTextCharFormat::WaveUnderline);
    unknown.setUnderlineColor(QColor(255, 110, 60));
    unknown.setToolTip(tr("Not in the model's vocabulary"));
    for (const WordSpan& span : cached_spans_) {
      const int start = span.start - offset;
      if (start + span.length <= 0 || start >= text.size()) continue;
      setFormat(std::max(start, 0), span.length, span.known ? known : unknown);
    }
  }

 public:
  void invalidate() { cached_text_.clear(); }

 private:
  PromptEdit* edit_;
  QString cached_text_;
  QList<WordSpan> cached_spans_;
};

PromptEdit::PromptEdit(QWidget* parent) : QPlainTextEdit(parent) {
  setTabChangesFocus(true);
  setLineWrapMode(QPlainTextEdit::WidgetWidth);
  setPlaceholderText(tr("Describe the video, then Enter to apply"));
  highlighter_ = new PromptHighlighter(this);
}

void PromptEdit::setWordClassifier(WordClassifier classifier) {
  classifier_ = std::move(classifier);
  static_cast<PromptHighlighter*>(highlighter_)->invalidate();
  highlighter_->rehighlight();
}

QList<WordSpan> PromptEdit::wordSpans() const {
  return classifier_ ? classifier_(toPlainText()) : QList<WordSpan>();
}

void PromptEdit::setText(const QString& text) {
  if (text == toPlainText()) return;
  setPlainText(text);
  moveCursor(QTextCursor::End);
}

QSize PromptEdit::sizeHint() const {
  const int line = fontMetrics().lineSpacing();
  return {400, 2 * line + 2 * int(document()->documentMargin()) + 6};
}

void PromptEdit::keyPressEvent(QKeyEvent* event) {
  const bool enter = event->key() == Qt::Key_Return || event->key() == Qt::Key_Enter;
  if (enter && !(event->modifiers() & Qt::ShiftModifier)) {
    emit applyRequested();
    event->accept();
    return;
  }
  const bool up = event->key() == Qt::Key_Up && event->modifiers() == Qt::NoModifier;
  const bool down = event->key() == Qt::Key_Down && event->modifiers() == Qt::NoModifier;
  if ((up && textCursor().blockNumber() == 0) ||
      (down && textCursor().blockNumber() == document()->blockCount() - 1)) {
    if (!history_.isEmpty()) {
      history_pos_ = std::clamp(history_pos_ + (up ? 1 : -1), -1, int(history_.size()) - 1);
      if (history_pos_ >= 0) setText(history_[history_pos_]);
      event->accept();
      return;
    }
  }
  QPlainTextEdit::keyPressEvent(event);
}

}  // namespace strand::ui
