// Types for logic-solver 2.x (MiniSat compiled to JavaScript), the subset strata uses.
declare module 'logic-solver' {
  namespace Logic {
    type Term = string;
    interface Formula {}
    type Operand = Term | Formula;
    interface Solution {
      getTrueVars(): string[];
      evaluate(f: Operand): boolean;
      getWeightedSum(terms: Operand[], weights: number[] | number): number;
    }
    class Solver {
      constructor();
      require(...f: Operand[]): void;
      forbid(...f: Operand[]): void;
      solve(): Solution | null;
      solveAssuming(f: Operand): Solution | null;
      minimizeWeightedSum(sol: Solution, terms: Operand[], weights: number[] | number): Solution;
    }
    function or(...f: Operand[]): Formula;
    function and(...f: Operand[]): Formula;
    function not(f: Operand): Formula;
    function implies(a: Operand, b: Operand): Formula;
    function equiv(a: Operand, b: Operand): Formula;
    function atMostOne(...f: Operand[]): Formula;
    function exactlyOne(...f: Operand[]): Formula;
  }
  export default Logic;
}
