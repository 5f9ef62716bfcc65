// PromptEdit: a short multi-line prompt box whose words are coloured by whether the model's
// vocabulary knows them (known: plain bright; unknown: orange with a wavy underline, the model
// sees them as [UNK] or word pieces). Enter (with or without Ctrl) asks to apply the prompt;
// Shift+Enter inserts a line break. Up/Down at the first/last line walk the prompt history.
//
// The classification comes from the caller (the app maps the engine tokenizer's words() back onto
// the text), so this widget has no engine dependency.
#pragma once
#include <QPlainTextEdit>
#include <QStringList>
#include <functional>

class QSyntaxHighlighter;

namespace strand::ui {

struct WordSpan {
  int start = 0;   // character offset in the text
  int length = 0;
  bool known = false;
};

class PromptEdit : public QPlainTextEdit {
  Q_OBJECT

 public:
  explicit PromptEdit(QWidget* parent = nullptr);

  using WordClassifier = std::function<QList<WordSpan>(const QString& text)>;
  void setWordClassifier(WordClassifier classifier);  // re-highlights
  [[nodiscard]] QList<WordSpan> wordSpans() const;     // of the current text

  [[nodiscard]] QString text() const { return toPlainText(); }
  void setText(const QString& text);

  void setHistory(const QStringList& history) { history_ = history; history_pos_ = -1; }

  [[nodiscard]] QSize sizeHint() const override;

 signals:
  void applyRequested();

 protected:
  void keyPressEvent(QKeyEvent* event) override;

 private:
  friend class PromptHighlighter;
  WordClassifier classifier_;
  QSyntaxHighlighter* highlighter_ = nullptr;
  QStringList history_;
  int history_pos_ = -1;
};

}  // namespace strand::ui
